"""The chatbot application built on `modeling_seq2seq`: training, inference, evaluation and their command lines.

Modules, in the order their imports run (each imports only those before it):
- `inference`: load a trained model folder or Hub id, reply to prompts, the tutorial's prompts;
- `cli`: one-line command-line errors and the decoding flags shared by every entry point;
- `evaluation`: held-out metrics (`luong-evaluate`);
- `training`: the `Trainer` subclass, its argument dataclasses and the training run (`luong-train`);
- `chat`: the terminal chat (`luong-chat`).
"""
