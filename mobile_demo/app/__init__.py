"""The phone app's static files (flower_edge.mobile_app), shipped inside the package so that
flower-bundle works from an installed wheel, not only from a checkout. Not Python: the page,
its scripts, the service worker and the manifest; flower-bundle copies them (mobile_demo/bundle/)."""
