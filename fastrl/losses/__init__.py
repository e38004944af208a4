"""Fused self-supervised losses (functional API and nn.Modules)."""
