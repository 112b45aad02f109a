from storyfilm.cli import main

main()
