"""Adapters out of the studio: merged, mixed and zipped (merge), GGUF for llama.cpp and Ollama
(gguf), the adapter alone for vLLM and llama.cpp (lora_serving), and every use of llama.cpp in a
child process (llama_runner).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
