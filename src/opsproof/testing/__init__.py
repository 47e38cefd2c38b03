"""Servers for testing checks: what opsproof's own tests, its benchmarks and its demo share.

Use them to test checks you write yourself against something real rather than a mock::

    from opsproof.testing.certs import Authority
    from opsproof.testing.kube_objects import pod, cronjob
    from opsproof.testing.kubernetes import KubeApiEmulator, serve_kube_api, write_kubeconfig
    from opsproof.testing.servers import free_port, serving

    api = KubeApiEmulator(token="t0k")
    api.add(pod("shop", "api-1", waiting="CrashLoopBackOff", restarts=7))
    with serve_kube_api(api) as served:
        write_kubeconfig(tmp_path / "kubeconfig", served, token="t0k")
        ...  # a profile whose kubernetes item names that kubeconfig; run pytest on it

- servers.py       `serving(port, app)`: an aiohttp app on loopback from a thread; `stop_process`
- certs.py         `Authority`: a CA and leaf certificates with chosen dates (cryptography only)
- kubernetes.py    `KubeApiEmulator`: the Kubernetes REST read API over HTTPS with a bearer token
- kube_objects.py  Kubernetes objects in the states the checks look for (`pod`, `deployment`, `cronjob`, ...)
- kube_objects_more.py  metrics-server's PodMetrics/NodeMetrics, Ingresses, NetworkPolicies, Endpoints,
                   custom resources (`pod_metrics`, `ingress`, `network_policy`, `custom_object`, ...)

Throwaway PostgreSQL and Redis servers are in `opsproof.local`.
"""
