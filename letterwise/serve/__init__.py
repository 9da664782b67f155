"""The letterwise HTTP API: the published model answers spelling, position and count questions.

`python -m letterwise.serve --model-dir models/published` starts it (docs/api.md). It is a
LitServe server with one LitAPI per task (/v1/spelling, /v1/position, /v1/count), each with
dynamic batching, in non-thinking mode only. Every answer is scored against the computable
ground truth and exported as Prometheus metrics at /metrics.

Modules: `config` (flags and environment), `published` (reading the published folder),
`schemas` (request and response models), `answering` (questions, prompts and scoring),
`engine` (the LitAPIs: model loading and batched generation), `guards` (auth, size limits,
back-pressure), `metrics` (Prometheus), `app` (the server).
"""
