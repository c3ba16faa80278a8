"""The web demo (``neural-render serve``): a Gradio app over the demo scene and the relight / edit pipelines.

:mod:`neural_render.web.app` holds pure callbacks (testable without a browser) and ``build_app``; gradio is
imported only by ``build_app``, so importing this package stays light.
"""
