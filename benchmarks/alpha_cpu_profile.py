"""CPU time (and optionally a cProfile) of certnn's `alpha-crown` on one model of alpha_vs_autolirpa.py,
one thread, the same models, samples and margin spec as that benchmark (certnn only; for the profiling of
issue 12). Writes the lower bounds to OUT_PT so two versions can be compared to the last digit.

    PYTHONPATH=src /work/peers/venv/bin/python benchmarks/alpha_cpu_profile.py gru-1-32 2 5 [prof|noprof] [OUT_PT]
"""
import sys, time, cProfile, pstats, torch
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
torch.set_num_threads(1)
import alpha_vs_autolirpa as A
import certnn
from certnn.certify.bounds import bounds_for_spec, make_spec
from certnn.optimize import AlphaConfig
name = sys.argv[1] if len(sys.argv) > 1 else "gru-1-32"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2
it = int(sys.argv[3]) if len(sys.argv) > 3 else 5
prof = len(sys.argv) > 4 and sys.argv[4] == "prof"
m, twin, xp, yp = A.load(name)
x, y = A.first_correct(m, xp, yp, n)
C = A.sshape.margin_spec(y)
graph = certnn.from_torch(m, tuple(x.shape[1:]))
eps = A.MODELS[name].eps
A.certnn_lower(graph, x[:1], eps, C[:1], None, "alpha-crown", 2)
def go():
    return A.certnn_lower(graph, x, eps, C, None, "alpha-crown", it)
c0 = time.process_time()
if prof:
    pr = cProfile.Profile(); pr.enable(); lo = go(); pr.disable()
else:
    lo = go()
dt = time.process_time() - c0
torch.set_printoptions(precision=17)
print("cpu", dt, "sum", lo.sum().item(), "mean", lo.mean().item())
torch.save(lo, f"benchmarks/out/alpha_cpu_{name}_{n}_{it}.pt" if len(sys.argv) <= 5 else sys.argv[5])
if prof:
    st = pstats.Stats(pr); st.sort_stats("tottime").print_stats(35)
    st.sort_stats("cumulative").print_stats(60)
