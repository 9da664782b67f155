"""Look inside: layer-wise linear probes and a logit lens for letter knowledge in hidden states.

Every other instrument reads the model's output; a null there does not say whether spelling
training put letters into the representations and the model fails to use them, or never put
them there. This package asks the states directly:

- `items`: the probe's strings (training-vocabulary strings to fit on, held-out words to test
  on, never overlapping) and their labels; torch-free.
- `extract`: hidden states at every layer for those strings (one batched forward pass).
- `probes`: logistic-regression probes per layer (letter in token, letter at position, letter
  count), Hewitt & Liang control tasks, selectivity, bootstrap CIs over words, arm comparison.
- `lens`: the logit lens at the cloze answer slot (final norm + unembedding at each layer).
- `run`: one model (base or base+adapter) end to end into one JSON; `study`: each committed
  study run's adapter, read-only from the DVC cache.

`python -m letterwise.probe --help` for the command line; the `probe` stage is stages/probe.py.
"""
