"""The declared experiment grid (experiments/grid.yaml), queued locally through DVC or fanned
out over many machines: `python -m letterwise.experiments` (cli).

Imports go one way, each module only from those above it:

    grid        the grid file, its validated runs, the `-S key=value` form
    queue       the local DVC queue: queue, start, wait
    plan        the fan-out cells, what each reruns, the cost estimate
    backend     the script every cell runs, the interface of a backend
    local       backend: subprocesses in fresh clones on this machine
    lightning   backend: one Lightning AI Job per attempt
    runner      the coordinator: runs, retries and gathers the cells
    fanout      `run GROUP ... --on local|lightning`: the fan-out's command line
    cli         the command line; `run` goes to fanout
"""
