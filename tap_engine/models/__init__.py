"""TAP models: backbones, encoders, the fusion model, heads and trainable state."""
