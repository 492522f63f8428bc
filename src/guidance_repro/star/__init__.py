"""The STAR family (text-to-image next-scale AR, built on VAR's blocks): the model (``model``), the
released model's network (``official_model``) and loader (``official``), the text encoders
(``text``), the training and CCA tasks (``tasks``) and the CLIs (``commands``, ``mjhq_commands``)."""
