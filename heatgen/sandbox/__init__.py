"""Local Keystone + Heat sandbox."""
