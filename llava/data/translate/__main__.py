from llava.data.translate.cli import main

main()
