"""The LlamaGen family (next-token AR): the class-conditional GPT and its pretraining task
(``model``), the toy VQ tokenizer (``tokenizer``), the official VQ-16 tokenizer network (``vq16``),
the official-file loaders (``official``), the CCA fine-tuning task (``cca_task``) with its recorded
frozen-reference pass (``cca_reference``), and the CLI (``commands``)."""
