"""Device pipeline: target profiles, firmware, build, backends and transport."""
