# Stub for a developer check: the converter falls back to config.json when AutoConfig fails.
class AutoConfig:
    @staticmethod
    def from_pretrained(*a, **k):
        raise RuntimeError("transformers stub: no AutoConfig")
class AutoTokenizer:
    @staticmethod
    def from_pretrained(*a, **k):
        raise RuntimeError("transformers stub: no AutoTokenizer")
