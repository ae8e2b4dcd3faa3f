"""`python -m playground.demo`: serve a checkpoint in the gradio demo (see `playground.demo.app`)."""

from playground.demo.app import main

main()
