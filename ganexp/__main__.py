from ganexp.cli.main import main

main()
