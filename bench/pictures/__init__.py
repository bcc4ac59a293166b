"""The pictures of the README and the page: figures made by the service, screenshots of the
page, and the page's sample digits."""
