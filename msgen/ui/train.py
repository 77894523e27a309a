"""train tab (being written)."""
import gradio as gr


def build(ctx):
    gr.Markdown("train")
