"""Chat with a trained model from a checkout: `python chat.py runs/sample`.

A thin script over `luong_chatbot.chat` (the same as the `luong-chat` console script); see its docstring.
"""

import sys

from luong_chatbot.chat import main

if __name__ == "__main__":
    sys.exit(main())
