"""Fixtures shared by the training tests: one torch thread for tiny models, and one tiny built dataset per module."""

from pathlib import Path

import pytest
import torch
from train_helpers import write_tiny_corpus

from data_scripts.build_dataset import build_dataset


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: a second thread only waits for the busy core (10x slower at times)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """The tiny synthetic corpus of `train_helpers`, built into a dataset and tokenizer once per test module."""
    root = tmp_path_factory.mktemp("tiny-dataset")
    build_dataset(write_tiny_corpus(root / "corpus"), root / "built")
    return root / "built"
