"""`train.py --push_to_hub`: the real huggingface_hub client against an in-process mock of the Hub's HTTP API.

The test runs this file as a script in a clean subprocess (no HF_HUB_OFFLINE, a dummy HF_TOKEN, its own HF_HOME),
which installs the mock with `huggingface_hub.set_client_factory`, trains and pushes a tiny model, loads it back
from the mock Hub with `trust_remote_code=True`, and writes what happened to a JSON report for the test to check.
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from hub_helpers import file_response, read_commit
from safetensors.torch import load_file
from train_helpers import REPO_ROOT, run_python, subprocess_env, tiny_run_flags, write_tiny_corpus

REPO_ID = "someone/tiny-chatbot"
PUSHED_FILES = {
    "README.md",
    "config.json",
    "configuration_luong_gru.py",
    "eval_results.json",
    "generation_config.json",
    "model.safetensors",
    "packed_gru.py",  # imported by modeling_luong_gru.py, so remote code needs it
    "modeling_luong_gru.py",
    "sample_conversation.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


class MockHub:
    """The Hub endpoints that create_repo, create_commit and from_pretrained use, over in-memory repositories."""

    def __init__(self, files: dict[str, dict[str, bytes]] | None = None):
        self.files: dict[str, dict[str, bytes]] = files or {}
        self.oid = "0" * 40
        self.commits: list[dict] = []
        self.unhandled: list[str] = []
        self.validated_readmes = 0

    def handle(self, request):
        import httpx2

        path, method = request.url.path, request.method
        if method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            self.files.setdefault(repo_id, {})
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{repo_id}"})
        if method == "POST" and path == "/api/validate-yaml":
            return self.validate_yaml(json.loads(request.content)["content"])
        if method == "POST" and path.startswith("/api/models/") and "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if method == "POST" and path.startswith("/api/models/") and "/commit/" in path:
            return self.commit(path.removeprefix("/api/models/").split("/commit/")[0], request.content)
        if method == "GET" and path.startswith("/api/models/") and path.removeprefix("/api/models/") in self.files:
            repo_id = path.removeprefix("/api/models/")
            siblings = [{"rfilename": name} for name in sorted(self.files[repo_id])]
            return httpx2.Response(200, json={"id": repo_id, "sha": self.oid, "private": False, "siblings": siblings})
        if method in ("HEAD", "GET") and "/resolve/" in path:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            return self.resolve(method, repo_id, rest.split("/", 1)[1])
        self.unhandled.append(f"{method} {request.url}")
        return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "not mocked"})

    def validate_yaml(self, content: str):
        """Stands in for the Hub's metadata check: the YAML parses, ModelCardData accepts it, model-index is valid."""
        import httpx2
        from huggingface_hub import ModelCard
        from huggingface_hub.repocard_data import model_index_to_eval_results

        try:
            data = ModelCard(content).data.to_dict()
            model_index_to_eval_results(data["model-index"])
        except Exception as error:  # any parsing failure is a validation error for the pusher
            return httpx2.Response(400, json={"errors": [{"message": str(error)}]})
        self.validated_readmes += 1
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def commit(self, repo_id: str, payload: bytes):
        import httpx2

        summary, added = read_commit(payload)
        self.files[repo_id].update(added)
        self.oid = hashlib.sha1(payload).hexdigest()
        self.commits.append({"repo_id": repo_id, "message": summary, "files": sorted(added)})
        url = f"https://huggingface.co/{repo_id}/commit/{self.oid}"
        return httpx2.Response(200, json={"commitUrl": url, "commitOid": self.oid})

    def resolve(self, method: str, repo_id: str, filename: str):
        import httpx2

        if repo_id not in self.files:
            return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"})
        if filename not in self.files[repo_id]:
            return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"})
        return file_response(method, self.files[repo_id][filename], self.oid)

    def install(self) -> None:
        import httpx2
        import huggingface_hub

        huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(self.handle)))


def push(dataset_dir: str, output_dir: str, hub_dir: str) -> None:
    """Subprocess 1: trains and pushes through the mock, then saves what the Hub received and a report."""
    sys.path.insert(0, str(REPO_ROOT))
    from luong_chatbot import training as train

    hub = MockHub()
    hub.install()
    argv = tiny_run_flags(Path(dataset_dir), Path(output_dir), push_to_hub=True, hub_model_id=REPO_ID)
    exit_code = train.main(argv)
    for name, content in hub.files[REPO_ID].items():
        Path(hub_dir, REPO_ID, name).parent.mkdir(parents=True, exist_ok=True)
        Path(hub_dir, REPO_ID, name).write_bytes(content)
    report = {"exit_code": exit_code, "commits": hub.commits, "validated_readmes": hub.validated_readmes}
    Path(hub_dir, "push.json").write_text(json.dumps(report))


def load(hub_dir: str) -> None:
    """Subprocess 2, where this package is never imported: loads the pushed model from the mock Hub and chats."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    files = {name.name: name.read_bytes() for name in Path(hub_dir, REPO_ID).iterdir()}
    MockHub({REPO_ID: files}).install()
    model = AutoModelForSeq2SeqLM.from_pretrained(REPO_ID, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(REPO_ID)
    reply_ids = model.generate(**tokenizer(["hello?"], return_tensors="pt"))
    report = {
        "model_module": type(model).__module__,
        "package_imported": any(name.startswith("modeling_seq2seq") for name in sys.modules),
        "state_dict": {name: tensor.tolist() for name, tensor in model.state_dict().items()},
        "reply": tokenizer.decode(reply_ids[0], skip_special_tokens=True),
    }
    Path(hub_dir, "load.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_push_to_hub_sends_a_loadable_model_in_one_commit(tmp_path):
    from data_scripts.build_dataset import build_dataset

    dataset, output_dir, hub_dir = tmp_path / "dataset", tmp_path / "model", tmp_path / "hub"
    build_dataset(write_tiny_corpus(tmp_path / "corpus"), dataset)
    env = subprocess_env(HF_TOKEN="hf_dummy_token_for_tests", HF_HOME=str(tmp_path / "hf-home"))
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HF_MODULES_CACHE"):
        env.pop(variable, None)
    pushed = run_python([__file__, "push", str(dataset), str(output_dir), str(hub_dir)], env=env)
    assert pushed.returncode == 0, pushed.stderr
    report = json.loads((hub_dir / "push.json").read_text())

    assert report["exit_code"] == 0 and report["validated_readmes"] == 1
    assert len(report["commits"]) == 1, report["commits"]
    commit = report["commits"][0]
    assert commit["repo_id"] == REPO_ID and commit["message"].startswith("Step 4: validation perplexity")
    assert set(commit["files"]) == PUSHED_FILES
    for name in PUSHED_FILES:
        assert (hub_dir / REPO_ID / name).read_bytes() == (output_dir / name).read_bytes(), name
    config = json.loads((hub_dir / REPO_ID / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_luong_gru.LuongGruConfig",
        "AutoModelForSeq2SeqLM": "modeling_luong_gru.LuongGruForConditionalGeneration",
    }
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == ("luong_gru", 16, 30)
    readme = (hub_dir / REPO_ID / "README.md").read_text()
    assert readme.startswith("---\n") and "model-index:\n- name: tiny-chatbot\n" in readme
    assert f'from_pretrained("{REPO_ID}", trust_remote_code=True)' in readme

    loaded = run_python([__file__, "load", str(hub_dir)], env=env)
    assert loaded.returncode == 0, loaded.stderr
    report = json.loads((hub_dir / "load.json").read_text())
    assert report["model_module"].startswith("transformers_modules.") and not report["package_imported"]
    saved = load_file(output_dir / "model.safetensors")
    for name, tensor in saved.items():
        assert torch.tensor(report["state_dict"][name]).equal(tensor), name
    assert isinstance(report["reply"], str)


if __name__ == "__main__":
    {"push": push, "load": load}[sys.argv[1]](*sys.argv[2:])
