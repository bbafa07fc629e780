"""Inference: multi-round chat sessions over a shared model."""

from mmgpt.infer.session import ChatOptions, ChatSession, chat_session

__all__ = ["ChatOptions", "ChatSession", "chat_session"]
