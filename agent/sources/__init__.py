"""Sensor sources: everything that produces readings for the agent, behind one small interface."""

from agent.sources.base import Reading, SensorSource

__all__ = ["Reading", "SensorSource"]
