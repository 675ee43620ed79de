"""Train the chatbot from a checkout: `python train.py --corpus-dir data/cornell-sample --output-dir runs/sample`.

A thin script over `luong_chatbot.training` (the same as the `luong-train` console script); see its docstring.
"""

import sys

from luong_chatbot.training import main

if __name__ == "__main__":
    sys.exit(main())
