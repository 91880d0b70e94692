from cluster.cli.main import run

run()
