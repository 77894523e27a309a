"""The app's ``gr.Blocks``: two places where gradio's defaults do not suit a public server.

* ``get_api_info``: completed by ``apidocs.annotate`` (every output named, every parameter
  described, optional ones marked optional).
* ``preprocess_data``: gradio fetches a file payload whose ``path`` is an http(s) URL (any public
  host) into its cache, in memory and without a size limit, before any handler runs. This app
  only ever takes files a visitor uploaded, so such a payload is refused here, before gradio
  looks at it (``validate.refuse_remote_files``). A value gradio's own preprocessing cannot read
  (text in a number box, a path it refuses) comes back as one clear message instead of gradio's
  bare "error: null".
"""

from __future__ import annotations

import gradio as gr

from .apidocs import annotate
from .validate import refuse_remote_files


class MsgenBlocks(gr.Blocks):
    def get_api_info(self, *args, **kwargs):
        return annotate(self, super().get_api_info(*args, **kwargs))

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        try:
            refuse_remote_files(inputs)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as exc:  # gradio's own checks of a stranger's values
            detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise gr.Error(f"a value in this request could not be read: {detail}") from None
