"""The only public entry point: authentication, limits, proxying, portal."""
