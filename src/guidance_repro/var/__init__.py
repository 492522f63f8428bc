"""The VAR family (next-scale AR): the transformer (``model``), the toy multi-scale VQ tokenizer
(``msvq``), the official VQVAE network (``vqvae``), the official-file loaders (``official``), the
pretraining and CCA tasks (``tasks``) and the CLI (``commands``)."""
