from ganexp.cli import main

main()
