"""Layers several model families use: config building (``config``), magnitude-preserving layers
(``mp``), 2-D RoPE (``rope2d``), the toy conv encoder/decoder (``toy_conv``) and the VQGAN-style
blocks of the official tokenizers (``vqgan_blocks``). Imports no family."""
