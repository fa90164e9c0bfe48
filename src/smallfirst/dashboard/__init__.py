"""The dashboard: a page served by the gateway showing traffic, energy, cost, CO2 and savings.

:mod:`.api` serves the page (``/`` and ``/dashboard``) and its data endpoints
(``/smallfirst/v1/dashboard/...``); ``static/`` holds the page itself: hand-written HTML,
CSS and JavaScript drawing its charts as inline SVG, shipped as package data, so it works
offline and needs no build step. Nothing here is imported until the app includes the router.
"""
