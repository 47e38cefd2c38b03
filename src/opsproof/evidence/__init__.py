"""The evidence bundle: one folder per run, one module per file format.

results.py builds the neutral model (results.json's content); json/junit/html
writers render it; manifest.py seals the folder and chains it to the previous
bundle of the same environment; verify.py checks a sealed folder.
"""
