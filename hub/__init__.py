"""Profiling on real Snapdragon phones through Qualcomm AI Hub (the `qai-hub` client): quantize,
compile, profile and run the exported student, and compare its on-device output with PyTorch.

The face: `require_credentials(api_token)` / `find_credentials` (the token, never shown),
`open_session(creds)` a client session; `Part` one graph to send; `run_on_hub(session, parts,
out, step=...)` the chain, written as JSON; `summarize_profile(payload)` a profile's figures;
`hub_rows(folder)` the report's rows; `DEFAULT_DEVICE`, `RUNTIMES`, `STEPS`, `HubError`.
Imported on first use (core/faces.py).
"""

from adcsr.core.faces import lazy_face

__getattr__, __all__ = lazy_face(__name__, {
    "require_credentials": "credentials", "find_credentials": "credentials", "open_session": "session",
    "Part": "chain", "HubError": "chain", "DEFAULT_DEVICE": "config", "RUNTIMES": "config",
    "QUANTIZE_MODES": "config", "STEPS": "config", "run_on_hub": "run_chain",
    "summarize_profile": "profile", "hub_rows": "summary", "read_results": "summary",
})
