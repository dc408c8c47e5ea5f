// Runtime: models, kernels, attention, KV cache, tokenizers, sampling, evaluation.
