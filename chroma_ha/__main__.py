from chroma_ha.cli.main import cli

cli()
