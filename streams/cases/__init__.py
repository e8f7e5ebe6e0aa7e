"""Cases: the pure logic (routing, service levels, the lifecycle, deadlines) and the
worker's view of every case (``feed``), the HTTP API (``api``); the agent that applies
alerts and commands is ``cxpulse.streams.agents.cases``. docs/cases.md."""
