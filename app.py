"""Serve a trained model as a web chat page: `python app.py runs/chatbot` (or set LUONG_MODEL; a Space runs this).

A thin script over `luong_chatbot.web` (the same as the `luong-web` console script); see its docstring.
"""

import sys

from luong_chatbot.web import main

if __name__ == "__main__":
    sys.exit(main())
