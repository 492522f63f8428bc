"""Image-level autoguidance on Fashion-MNIST: an EDM2-style denoiser sized for CPU (``network``),
its TrainTask (``task``), sampling with guidance (``sample``), the report (``report``), the paper
tier's EDM2 pickle loader (``edm2_pickles``) and the CLI (``commands``)."""
