"""letterwise: the shared core of the pipeline, used by the dvc stages (`stages/`), the server
and the report.

    params, presets      the validated params.yaml and the model presets
    io                   atomic writes
    chat                 chat-template rendering of questions and training pairs
    tasks/               spelling, position, count: phrasings, expected answers, parsers
    data/                torch-free: the tokenizer vocabulary, the token subset, the dataset
    modeling, generation model loading per preset; the batched generation engine
    training/            the LoRA fine-tune: data, checkpoints, trainer
    eval/                scoring, statistics, the evaluation runner
    cards/               the model card and the dataset card
    publishing/          the Hub-shaped folder, load-back check, Hub push
    experiments/         the experiment grid: queued locally or fanned out over machines

Nothing is imported here: `import letterwise.data.tokens` must not pull in torch.
"""
