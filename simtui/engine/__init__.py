"""Orchestration over hosts and the store; async, never imports textual."""
