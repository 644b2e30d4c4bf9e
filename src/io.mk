# src/ input and output: safetensors, JSON config, token data.
