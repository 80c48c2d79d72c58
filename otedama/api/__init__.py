"""The operator and miner surface: REST API, OpenAPI document, WebSocket, dashboard."""
