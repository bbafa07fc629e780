"""The Gradio web page: upload an image, chat over several rounds with streaming, tune generation parameters.

Every browser session gets its own ChatSession (held in gr.State); generation is queued one request at a time on
the shared model.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw


def example_images(directory: Path | None = None) -> list[str]:
    """Draw a few small example pictures (coloured shapes) and return their paths."""
    directory = directory or Path(tempfile.gettempdir()) / "mmgpt-examples"
    directory.mkdir(parents=True, exist_ok=True)
    specs = {
        "three_shapes.png": [
            ("ellipse", (8, 8, 40, 40), "red"),
            ("rectangle", (70, 20, 110, 60), "blue"),
            ("ellipse", (30, 80, 60, 110), "green"),
        ],
        "two_squares.png": [
            ("rectangle", (15, 15, 55, 55), "yellow"),
            ("rectangle", (70, 70, 110, 110), "purple"),
        ],
    }
    paths = []
    for name, shapes in specs.items():
        path = directory / name
        if not path.exists():
            image = Image.new("RGB", (128, 128), (245, 243, 236))
            draw = ImageDraw.Draw(image)
            for kind, box, colour in shapes:
                getattr(draw, kind)(box, fill=colour, outline="black")
            image.save(path)
        paths.append(str(path))
    return paths


def build_app(model: Any) -> Any:
    """The gr.Blocks app chatting with `model`."""
    import gradio as gr

    from mmgpt.errors import MmgptError
    from mmgpt.infer.session import ChatSession

    def respond(message, image, history, session, max_new_tokens, sample, temperature, top_k, top_p, beams):
        if not message or not message.strip():
            yield history, session, "", image
            return
        if session is None:
            session = ChatSession(model)
        options = {
            "max_new_tokens": int(max_new_tokens),
            "do_sample": bool(sample),
            "temperature": float(temperature),
            "top_k": int(top_k),
            "top_p": float(top_p),
            "num_beams": 1 if sample else int(beams),
        }
        images = [image] if image is not None else []
        history = [*history, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        text = ""
        try:
            for delta in session.stream(message, images, **options):
                text += delta
                history[-1] = {"role": "assistant", "content": text}
                yield history, session, "", None
        except MmgptError as err:
            # e.g. a message longer than the context: Gradio shows a gr.Error's message, other errors as "Error"
            raise gr.Error(str(err)) from err
        yield history, session, "", None

    def clear():
        return [], None, "", None

    with gr.Blocks(title="mmgpt") as app:
        gr.Markdown(
            "## MultiModal-GPT\nUpload an image, ask about it, keep talking. A new image can join any round."
        )
        session = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="pil", label="image (attached to your next message)", elem_id="image")
                gr.Examples(example_images(), inputs=image)
                with gr.Accordion("parameters", open=False):
                    max_new = gr.Slider(1, 512, value=128, step=1, label="max new tokens")
                    sample = gr.Checkbox(value=False, label="sampling")
                    temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="temperature")
                    top_k = gr.Slider(0, 200, value=0, step=1, label="top-k (0 = off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p")
                    beams = gr.Slider(1, 8, value=1, step=1, label="beams (greedy only)")
            with gr.Column(scale=2):
                chat = gr.Chatbot(label="conversation", height=420, elem_id="chat", **_messages_format(gr))
                text = gr.Textbox(placeholder="Ask about the image...", label="message", elem_id="message")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    reset = gr.Button("Clear", elem_id="clear")
        inputs = [text, image, chat, session, max_new, sample, temperature, top_k, top_p, beams]
        outputs = [chat, session, text, image]
        replies = [send.click(respond, inputs, outputs), text.submit(respond, inputs, outputs)]
        # Clear stops a reply still being written, then clears: an update the reply sent before it stopped
        # would otherwise land after the clearing and bring the old chat back
        reset.click(None, None, None, cancels=replies).then(clear, None, [chat, session, text, image])
    return app


def _messages_format(gr: Any) -> dict[str, str]:
    """Chatbot keyword arguments for role/content message dicts: Gradio 5 needs type="messages" (its default is
    (user, bot) pairs); Gradio 6 only has the message format and no longer takes `type`."""
    return {"type": "messages"} if "type" in inspect.signature(gr.Chatbot.__init__).parameters else {}


def launch(app: Any, host: str, port: int, **options: Any) -> None:
    """Serve `app` on host:port with generation queued one request at a time and the page's link to its API
    hidden. Gradio 5 hides that link with `show_api=False`; Gradio 6 dropped that argument (passing it is a
    TypeError) and takes the footer links to show instead. `options` go to `launch` as they are."""
    accepted = inspect.signature(app.launch).parameters
    kwargs: dict[str, Any] = {"server_name": host, "server_port": port, **options}
    if "show_api" in accepted:
        kwargs["show_api"] = False
    elif "footer_links" in accepted:
        kwargs["footer_links"] = ["gradio", "settings"]
    app.queue(default_concurrency_limit=1).launch(**kwargs)
