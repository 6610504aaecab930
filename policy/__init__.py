"""Stay / Exit / Offload policies: cost model, trace-replay environment, learners, baselines."""
