from crossfuse.cli import main

main()
