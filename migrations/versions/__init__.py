"""Revision scripts; a package only so that setuptools installs them."""
