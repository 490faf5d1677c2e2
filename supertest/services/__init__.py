"""What views and actors share: plain functions over ids and values."""
