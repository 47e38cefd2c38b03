"""The evidence bundle: one folder per run, one module per file format.

results.py builds the neutral model (results.json's content); json/junit/html
writers render it; manifest.py seals the folder and chains it to the previous
bundle of the same environment (signing.py adds an Ed25519 signature of it);
verify.py checks a sealed folder and chain.py every link of an environment's chain.
"""
