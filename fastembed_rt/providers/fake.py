"""``FakeProvider``: an engine made of a callable, for unit tests (like httpx's ``MockTransport``).

>>> import numpy as np
>>> fake = FakeProvider(lambda feeds, names: {"sentence_embedding": feeds["input_ids"][:, :1].astype(np.float32)})
>>> fake.run({"input_ids": np.array([[7, 8]])}, ["sentence_embedding"])["sentence_embedding"]
array([[7.]], dtype=float32)

Pass it as ``SentenceTransformer(artifact, provider=FakeProvider(handler))``; every call is recorded
in ``calls`` as ``(feeds, output_names)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastembed_rt.errors import MODEL_CLOSED, ProviderError

__all__ = ["FakeProvider"]

Handler = Callable[[dict[str, np.ndarray], list[str]], dict[str, np.ndarray]]


class FakeProvider:
    """Answers ``run`` with ``handler(feeds, output_names)``."""

    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "fake",
        input_names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids"),
        output_names: tuple[str, ...] = ("sentence_embedding", "token_embeddings"),
    ) -> None:
        self.name = name
        self.input_names = input_names
        self.output_names = output_names
        self.calls: list[tuple[dict[str, np.ndarray], list[str]]] = []
        self.closed = False
        self._handler = handler

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        if self.closed:
            raise ProviderError(MODEL_CLOSED)
        self.calls.append((feeds, list(output_names)))
        return self._handler(feeds, output_names)

    def close(self) -> None:
        self.closed = True
