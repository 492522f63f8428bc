"""Golden values of the regression check: fixed computations on seeded tiny weights across every
family (inputs.py writes the inputs, values.py computes, commands.py: golden-values and
golden-tolerance). A top-level package, as the task table: it names every family's modules."""
