"""Live streaming: the aiortc video track and the aiohttp/WebRTC server."""
