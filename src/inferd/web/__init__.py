"""The console: static files served by inferd itself (no CDN, no build step) and their one route module."""
