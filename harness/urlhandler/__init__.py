"""pyserial URL handlers of the harness (`fault://`), found through
`serial.protocol_handler_packages`."""
