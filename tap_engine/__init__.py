"""tap_engine"""
